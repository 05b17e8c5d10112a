{#- No two rows share the same values of `combination` (dbt_utils' test, without the package:
    packages cannot be downloaded where this project is built). -#}
{% test unique_combination_of_columns(model, combination) %}
select {{ combination | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1
{% endtest %}
