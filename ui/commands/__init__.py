"""The ``erasure-studio`` commands, one module each (``cmd_NAME(argv) -> exit status``); ``ui.cli`` lists them.

``common`` holds what they share: the one-line-error parsers (flags generated from config dataclasses), config files,
the default device and progress bars.
"""
