"""`dbt` (the cross-database macros) for sqlfluff's jinja templater."""


def type_string() -> str:
    return "text"
