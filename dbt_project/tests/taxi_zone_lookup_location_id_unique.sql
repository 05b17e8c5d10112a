{#- Each zone id of the public zone table appears once, and none is empty: ingested zones are compared
    to the table on it. A singular test, not `unique`/`not_null` on the column: the mixed-case column
    must be quoted, and a generic test's id then depends on the adapter's quoting, so a BigQuery build
    would name tests the prepared manifest does not have. -#}
{{ config(
    meta={'description': 'Each location id of the public zone table (the taxi_zone_lookup seed) appears '
        ~ 'once and none is empty. Fails with the number of offending ids.'},
) }}

select {{ adapter.quote('LocationID') }} as location_id, count(*) as occurrences
from {{ ref('taxi_zone_lookup') }}
group by {{ adapter.quote('LocationID') }}
having count(*) > 1 or {{ adapter.quote('LocationID') }} is null
