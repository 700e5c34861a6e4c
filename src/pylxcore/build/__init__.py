"""Building images: the builder and its cache keys, bases, the build context, build events, build records.

Empty on purpose: the command line imports ``pylxcore.build.record`` alone
to replay a recorded build, and that loads this file first.
"""
