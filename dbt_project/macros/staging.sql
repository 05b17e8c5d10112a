{#- One staging select for both colours: snake_case names, integer ids, timestamps, NULL vendors
    dropped. The source holds one row per unique_row_id per file (the ingest deduplicates). -#}
{% macro stage_trips(service, pickup, dropoff, trip_type, ehail_fee) -%}
select
    unique_row_id as trip_id,
    filename,
    {{ source_month('filename') }} as source_month,
    cast({{ adapter.quote('VendorID') }} as integer) as vendor_id,
    cast({{ adapter.quote('RatecodeID') }} as integer) as ratecode_id,
    cast({{ adapter.quote('PULocationID') }} as integer) as pickup_location_id,
    cast({{ adapter.quote('DOLocationID') }} as integer) as dropoff_location_id,
    cast({{ pickup }} as timestamp) as pickup_datetime,
    cast({{ dropoff }} as timestamp) as dropoff_datetime,
    store_and_fwd_flag,
    cast(passenger_count as integer) as passenger_count,
    cast(trip_distance as numeric) as trip_distance,
    cast({{ trip_type }} as integer) as trip_type,
    cast(fare_amount as numeric) as fare_amount,
    cast(extra as numeric) as extra,
    cast(mta_tax as numeric) as mta_tax,
    cast(tip_amount as numeric) as tip_amount,
    cast(tolls_amount as numeric) as tolls_amount,
    cast({{ ehail_fee }} as numeric) as ehail_fee,
    cast(improvement_surcharge as numeric) as improvement_surcharge,
    cast(total_amount as numeric) as total_amount,
    cast(congestion_surcharge as numeric) as congestion_surcharge,
    cast(payment_type as integer) as payment_type
from {{ source('taxi', service ~ '_tripdata') }}
where {{ adapter.quote('VendorID') }} is not null
{%- endmacro %}
