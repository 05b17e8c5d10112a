-- For-hire vehicle trips (bases other than the high-volume services), cleaned: snake_case names,
-- integer zone ids (the files write them as doubles, often empty), timestamps. Every trip is kept:
-- fhv records have no vendor, fare or payment.
select
    unique_row_id as trip_id,
    filename,
    {{ source_month('filename') }} as source_month,
    dispatching_base_num,
    {{ adapter.quote('Affiliated_base_number') }} as affiliated_base_number,
    cast({{ adapter.quote('PULocationID') }} as integer) as pickup_location_id,
    cast({{ adapter.quote('DOLocationID') }} as integer) as dropoff_location_id,
    cast(pickup_datetime as timestamp) as pickup_datetime,
    cast(dropoff_datetime as timestamp) as dropoff_datetime,
    cast({{ adapter.quote('SR_Flag') }} as integer) as sr_flag
from {{ source('taxi', 'fhv_tripdata') }}
