{#- The zone file ingested from the release (dim_zones) agrees with the TLC's public zone table
    (the taxi_zone_lookup seed): the same location ids, with the same borough, zone and service
    zone. One row per location id that differs. Severity warn: the trips keep the ingested file's
    names; the check reports how many zones differ. A Dagster check of dbt/dim_zones (the meta
    below), run when dim_zones and the seed are built together (indirect selection `buildable`). -#}
{{ config(
    severity='warn',
    meta={
        'dagster': {'ref': {'name': 'dim_zones'}},
        'description': 'The ingested zone file agrees with the public TLC zone table (the '
            ~ 'taxi_zone_lookup seed): same location ids, boroughs, zone names and service zones. '
            ~ 'Fails (a warning) with the number of zones that differ.',
    },
) }}

with public_zones as (
    select
        {{ adapter.quote('LocationID') }} as location_id,
        {{ adapter.quote('Borough') }} as borough,
        {{ adapter.quote('Zone') }} as zone,
        service_zone
    from {{ ref('taxi_zone_lookup') }}
)

select
    coalesce(ingested.location_id, public_zones.location_id) as location_id,
    case
        when public_zones.location_id is null then 'not in the public zone table'
        when ingested.location_id is null then 'missing from the ingested zone file'
        else 'borough, zone or service_zone differs'
    end as problem
from {{ ref('dim_zones') }} as ingested
full outer join public_zones on ingested.location_id = public_zones.location_id
where ingested.location_id is null
    or public_zones.location_id is null
    or coalesce(ingested.borough, '') != coalesce(public_zones.borough, '')
    or coalesce(ingested.zone, '') != coalesce(public_zones.zone, '')
    or coalesce(ingested.service_zone, '') != coalesce(public_zones.service_zone, '')
