{#- Reconciliation: for each source month being built and each service, the model holds exactly
    the rows of that month's file in the service's final table (loaded by the ingest, one file a
    month). A month rebuilt twice, or half-deleted, shows here with both counts. `services` maps
    the model's service_type to the dataset: {'Yellow': 'yellow', 'Green': 'green'}. -#}
{% test rows_match_final_tables(model, services) %}
with model_rows as (
    select source_month, service_type, count(*) as rows_in_model
    from {{ model }}
    {{ where_month('source_month') }}
    group by source_month, service_type
),

final_rows as (
    {% for service, dataset in services.items() %}
    select {{ source_month('filename') }} as source_month, '{{ service }}' as service_type, count(*) as rows_in_final
    from {{ source('taxi', dataset ~ '_tripdata') }}
    {{ where_source_file(dataset) }}
    group by {{ source_month('filename') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    coalesce(m.source_month, f.source_month) as source_month,
    coalesce(m.service_type, f.service_type) as service_type,
    m.rows_in_model,
    f.rows_in_final
from model_rows as m
full outer join final_rows as f
    on m.source_month = f.source_month and m.service_type = f.service_type
where m.rows_in_model is distinct from f.rows_in_final
{% endtest %}
