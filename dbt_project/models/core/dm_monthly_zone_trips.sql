-- Trips per pickup zone, source month and service type, for all four services (fact_trips: Yellow,
-- Green; fact_fhv_trips: FHV, HVFHV), with what passengers paid where the records have fares.
-- Incremental by month like dm_monthly_zone_revenue.
{{ config(
    materialized='incremental',
    incremental_strategy=month_incremental_strategy(),
    partitions=month_partitions(),
    on_schema_change='fail',
    pre_hook="{{ delete_rebuilt_month('source_month') }}",
    tags=['monthly'],
    indexes=[{'columns': ['source_month']}],
    partition_by={'field': 'source_month', 'data_type': 'date', 'granularity': 'month'},
) }}

with all_trips as (
    select
        source_month,
        service_type,
        pickup_location_id,
        pickup_borough,
        pickup_zone,
        total_amount as paid
    from {{ ref('fact_trips') }}
    {{ where_month('source_month') }}
    union all
    -- NULL for fhv trips (no fares): their zones' revenue is NULL.
    select
        source_month,
        service_type,
        pickup_location_id,
        pickup_borough,
        pickup_zone,
        passenger_total_amount as paid
    from {{ ref('fact_fhv_trips') }}
    {{ where_month('source_month') }}
)

select
    source_month,
    service_type,
    pickup_location_id,
    pickup_borough,
    pickup_zone,
    count(*) as trips,
    sum(paid) as revenue
from all_trips
group by source_month, service_type, pickup_location_id, pickup_borough, pickup_zone
