from netprobe.cli import main

main()
