"""The one part pyproject.toml cannot declare stably: the native RTP relay (telephony/rtp/_relay.c).

The packet path of a bridged call costs Python about 17 us per relayed packet; in C it is the
system calls. Plain C against the CPython API, no library: pip builds it with the package.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "telephony.rtp._relay",
            sources=["telephony/rtp/_relay.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        )
    ]
)
