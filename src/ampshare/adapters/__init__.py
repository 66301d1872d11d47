"""The I/O edge: each adapter sits behind a ``typing.Protocol`` port and translates its
library's errors into ``ampshare.errors``."""
