"""Stand-ins for the hosted APIs the backends call and this machine cannot reach, each
following the documented contract of the API version its docstring names (devinfra.hosted
.server is the frame they share)."""
