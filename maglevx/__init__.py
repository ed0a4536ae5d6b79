"""maglevx: predict, bit for bit, which real server IPVS Maglev hashing picks.

>>> import maglevx
>>> d = maglevx.Director.from_history('''
... -A -t 10.0.0.1:80 -s mh -b mh-port
... -a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
... -a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1
... ''')
>>> rs = maglevx.lookup(("tcp", "192.0.2.7", 40000, "10.0.0.1", 80), d)
>>> rs.endpoint in ("10.1.0.1:80", "10.1.0.2:80")
True
"""

from maglevx._version import __version__
from maglevx.errors import MaglevxError
from maglevx.model import (
    DEFAULT_TABLE_SIZE,
    KERNEL_REFERENCE,
    PRIMES,
    Director,
    DirectorParams,
    RealServer,
    TableSnapshot,
    VirtualService,
    fold_address,
    lookup,
)

__all__ = [
    "__version__",
    "DEFAULT_TABLE_SIZE",
    "KERNEL_REFERENCE",
    "PRIMES",
    "Director",
    "DirectorParams",
    "MaglevxError",
    "RealServer",
    "TableSnapshot",
    "VirtualService",
    "fold_address",
    "lookup",
]
