"""`adapter` for sqlfluff's jinja templater (the models are linted without a dbt connection)."""


def quote(identifier: str) -> str:
    return f'"{identifier}"'


def dispatch(macro_name: str, macro_namespace: str | None = None):
    """The dispatched macro as a plain function call: the lint sees an expression of the right shape."""

    def call(*args: object) -> str:
        return f"{macro_name}({', '.join(str(a) for a in args)})"

    return call
