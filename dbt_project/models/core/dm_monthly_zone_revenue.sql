-- Revenue per pickup zone, source month and service type. Incremental by month like fact_trips.
{{ config(
    materialized='incremental',
    incremental_strategy=month_incremental_strategy(),
    partitions=month_partitions(),
    on_schema_change='fail',
    pre_hook="{{ delete_rebuilt_month('revenue_month') }}",
    tags=['monthly'],
    indexes=[{'columns': ['revenue_month']}],
    partition_by={'field': 'revenue_month', 'data_type': 'date', 'granularity': 'month'},
) }}

select
    pickup_location_id as revenue_zone_id,
    pickup_zone as revenue_zone,
    pickup_borough as revenue_borough,
    source_month as revenue_month,
    service_type,
    sum(fare_amount) as revenue_monthly_fare,
    sum(extra) as revenue_monthly_extra,
    sum(mta_tax) as revenue_monthly_mta_tax,
    sum(tip_amount) as revenue_monthly_tip_amount,
    sum(tolls_amount) as revenue_monthly_tolls_amount,
    sum(ehail_fee) as revenue_monthly_ehail_fee,
    sum(improvement_surcharge) as revenue_monthly_improvement_surcharge,
    sum(congestion_surcharge) as revenue_monthly_congestion_surcharge,
    sum(total_amount) as revenue_monthly_total_amount,
    count(*) as total_monthly_trips,
    avg(passenger_count) as avg_monthly_passenger_count,
    avg(trip_distance) as avg_monthly_trip_distance
from {{ ref('fact_trips') }}
{{ where_month('source_month') }}
group by pickup_location_id, pickup_zone, pickup_borough, source_month, service_type
