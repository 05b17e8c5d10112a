-- Yellow and green trips with zones, payment type and duration, from the course's CSV files or the
-- TLC's Parquet files. Incremental by source month: a monthly run deletes and re-inserts exactly that
-- month, in one transaction (see delete_rebuilt_month).
{{ config(
    materialized='incremental',
    incremental_strategy=month_incremental_strategy(),
    partitions=month_partitions(),
    on_schema_change='fail',
    pre_hook="{{ delete_rebuilt_month('source_month') }}",
    tags=['monthly'],
    indexes=[{'columns': ['source_month']}],
    partition_by={'field': 'source_month', 'data_type': 'date', 'granularity': 'month'},
    cluster_by=['service_type', 'pickup_location_id'],
) }}

with trips as (
    select
        *,
        'Green' as service_type
    from {{ ref('stg_green_tripdata') }} {{ where_source_file('green') }}
    union all
    select
        *,
        'Yellow' as service_type
    from {{ ref('stg_yellow_tripdata') }} {{ where_source_file('yellow') }}
)

select
    trips.trip_id,
    trips.source_month,
    trips.service_type,
    trips.vendor_id,
    trips.ratecode_id,
    trips.pickup_location_id,
    coalesce(pickup_zone.borough, 'Unknown') as pickup_borough,
    coalesce(pickup_zone.zone, 'Unknown') as pickup_zone,
    trips.dropoff_location_id,
    coalesce(dropoff_zone.borough, 'Unknown') as dropoff_borough,
    coalesce(dropoff_zone.zone, 'Unknown') as dropoff_zone,
    trips.pickup_datetime,
    trips.dropoff_datetime,
    {{ duration_minutes('trips.pickup_datetime', 'trips.dropoff_datetime') }} as trip_duration_minutes,
    trips.store_and_fwd_flag,
    trips.passenger_count,
    trips.trip_distance,
    trips.trip_type,
    trips.fare_amount,
    trips.extra,
    trips.mta_tax,
    trips.tip_amount,
    trips.tolls_amount,
    trips.ehail_fee,
    trips.improvement_surcharge,
    trips.total_amount,
    trips.congestion_surcharge,
    trips.airport_fee,
    trips.cbd_congestion_fee,
    trips.payment_type,
    coalesce(payment_types.description, 'Unknown') as payment_type_description
from trips
-- Left joins: a trip with an unknown zone or payment type is kept and labelled, never dropped.
left join {{ ref('dim_zones') }} as pickup_zone on trips.pickup_location_id = pickup_zone.location_id
left join {{ ref('dim_zones') }} as dropoff_zone on trips.dropoff_location_id = dropoff_zone.location_id
left join {{ ref('payment_type_lookup') }} as payment_types on trips.payment_type = payment_types.payment_type
