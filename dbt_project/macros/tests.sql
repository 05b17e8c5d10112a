{#- accepted_values returning every failing ROW (dbt's returns one row per bad value), so the
    Dagster check's failed-row count is the number of trips affected. Overrides the built-in. -#}
{% macro default__test_accepted_values(model, column_name, values, quote=True) %}
select {{ column_name }} as value_field
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not in (
    {%- for value in values -%}
      {%- if quote %}'{{ value }}'{% else %}{{ value }}{% endif %}{{ ", " if not loop.last }}
    {%- endfor -%}
  )
{% endmacro %}
