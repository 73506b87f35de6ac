"""Pure core: no sockets, no trio, no subprocess, no clock. Bytes and events in, values out."""
