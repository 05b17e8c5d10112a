-- For-hire trips: fhv (service_type 'FHV') and the high-volume services (fhvhv, 'HVFHV'), with
-- pickup/dropoff zones, the high-volume company (the hvfhs_license_lookup seed) and duration.
-- Incremental by source month like fact_trips: a monthly run deletes and re-inserts exactly that
-- month (see delete_rebuilt_month). The two datasets share the columns they both have; a column of
-- one only is NULL for the other's trips.
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

{%- set text, money = dbt.type_string(), 'numeric' %}

with trips as (
    select
        trip_id,
        source_month,
        'FHV' as service_type,
        cast(null as {{ text }}) as hvfhs_license_num,
        dispatching_base_num,
        cast(null as {{ text }}) as originating_base_num,
        affiliated_base_number,
        pickup_location_id,
        dropoff_location_id,
        cast(null as timestamp) as request_datetime,
        cast(null as timestamp) as on_scene_datetime,
        pickup_datetime,
        dropoff_datetime,
        cast(null as {{ money }}) as trip_miles,
        cast(null as integer) as trip_time,
        cast(null as {{ money }}) as base_passenger_fare,
        cast(null as {{ money }}) as tolls,
        cast(null as {{ money }}) as bcf,
        cast(null as {{ money }}) as sales_tax,
        cast(null as {{ money }}) as congestion_surcharge,
        cast(null as {{ money }}) as airport_fee,
        cast(null as {{ money }}) as tips,
        cast(null as {{ money }}) as driver_pay,
        cast(null as {{ money }}) as cbd_congestion_fee,
        sr_flag,
        cast(null as {{ text }}) as shared_request_flag,
        cast(null as {{ text }}) as shared_match_flag,
        cast(null as {{ text }}) as access_a_ride_flag,
        cast(null as {{ text }}) as wav_request_flag,
        cast(null as {{ text }}) as wav_match_flag
    from {{ ref('stg_fhv_tripdata') }} {{ where_source_file('fhv') }}
    union all
    select
        trip_id,
        source_month,
        'HVFHV' as service_type,
        hvfhs_license_num,
        dispatching_base_num,
        originating_base_num,
        cast(null as {{ text }}) as affiliated_base_number,
        pickup_location_id,
        dropoff_location_id,
        request_datetime,
        on_scene_datetime,
        pickup_datetime,
        dropoff_datetime,
        trip_miles,
        trip_time,
        base_passenger_fare,
        tolls,
        bcf,
        sales_tax,
        congestion_surcharge,
        airport_fee,
        tips,
        driver_pay,
        cbd_congestion_fee,
        cast(null as integer) as sr_flag,
        shared_request_flag,
        shared_match_flag,
        access_a_ride_flag,
        wav_request_flag,
        wav_match_flag
    from {{ ref('stg_fhvhv_tripdata') }} {{ where_source_file('fhvhv') }}
)

select
    trips.trip_id,
    trips.source_month,
    trips.service_type,
    trips.hvfhs_license_num,
    -- NULL for fhv trips (no high-volume company); 'Unknown' for a license the seed does not list.
    case when trips.service_type = 'HVFHV' then coalesce(companies.company, 'Unknown') end as hvfhs_company,
    trips.dispatching_base_num,
    trips.originating_base_num,
    trips.affiliated_base_number,
    trips.pickup_location_id,
    coalesce(pickup_zone.borough, 'Unknown') as pickup_borough,
    coalesce(pickup_zone.zone, 'Unknown') as pickup_zone,
    trips.dropoff_location_id,
    coalesce(dropoff_zone.borough, 'Unknown') as dropoff_borough,
    coalesce(dropoff_zone.zone, 'Unknown') as dropoff_zone,
    trips.request_datetime,
    trips.on_scene_datetime,
    trips.pickup_datetime,
    trips.dropoff_datetime,
    {{ duration_minutes('trips.pickup_datetime', 'trips.dropoff_datetime') }} as trip_duration_minutes,
    trips.trip_miles,
    trips.trip_time,
    trips.base_passenger_fare,
    trips.tolls,
    trips.bcf,
    trips.sales_tax,
    trips.congestion_surcharge,
    trips.airport_fee,
    trips.tips,
    trips.driver_pay,
    trips.cbd_congestion_fee,
    -- What the passenger paid (the fare, every charge passed on, and the tip); NULL for fhv trips.
    (
        trips.base_passenger_fare
        + coalesce(trips.tolls, 0) + coalesce(trips.bcf, 0) + coalesce(trips.sales_tax, 0)
        + coalesce(trips.congestion_surcharge, 0) + coalesce(trips.airport_fee, 0)
        + coalesce(trips.cbd_congestion_fee, 0) + coalesce(trips.tips, 0)
    ) as passenger_total_amount,
    trips.sr_flag,
    trips.shared_request_flag,
    trips.shared_match_flag,
    trips.access_a_ride_flag,
    trips.wav_request_flag,
    trips.wav_match_flag
from trips
-- Left joins: a trip with an unknown or empty zone or license is kept and labelled, never dropped.
left join {{ ref('dim_zones') }} as pickup_zone on trips.pickup_location_id = pickup_zone.location_id
left join {{ ref('dim_zones') }} as dropoff_zone on trips.dropoff_location_id = dropoff_zone.location_id
left join {{ ref('hvfhs_license_lookup') }} as companies
    on trips.hvfhs_license_num = companies.hvfhs_license_num
