{#- Every row satisfies `expression` (dbt_utils' test, without the package: packages cannot be
    downloaded where this project is built). Returns the failing rows, so the Dagster check's
    failed-row count is the number of rows affected. -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
