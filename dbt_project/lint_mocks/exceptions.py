"""`exceptions` for sqlfluff's jinja templater: the lint renders every branch, so errors render as
nothing instead of stopping it."""


def raise_compiler_error(message: str) -> str:
    return ""
