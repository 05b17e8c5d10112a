{#- One staging select for both colours: snake_case names, integer ids, timestamps, unattributed
    rows dropped. The source holds one row per unique_row_id per file (the ingest deduplicates).

    Which rows are dropped: those with neither a VendorID nor a vendor_name. That is the block of
    rows at the end of the course's 2020+ CSV files that no vendor is attributed to (VendorID,
    passenger_count, RatecodeID, store_and_fwd_flag and payment_type empty; datasets.py,
    unattributed_columns), as before. The TLC's Parquet files fill VendorID on those rows, which are
    kept. Yellow 2009-2010 trips of Digital Dispatch Systems have no VendorID (the dictionary numbers
    only CMT 1 and VeriFone 2) but their code in vendor_name ('DDS'): kept, with vendor_id NULL.
    `vendor_name`: the column holding the 2009-2010 code (yellow), or none (green has no such column). -#}
{% macro stage_trips(service, pickup, dropoff, trip_type, ehail_fee, airport_fee, vendor_name=none) -%}
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
    cast(payment_type as integer) as payment_type,
    cast({{ airport_fee }} as numeric) as airport_fee,
    cast(cbd_congestion_fee as numeric) as cbd_congestion_fee
from {{ source('taxi', service ~ '_tripdata') }}
where {{ adapter.quote('VendorID') }} is not null
{%- if vendor_name is not none %} or {{ vendor_name }} is not null{% endif %}
{%- endmacro %}

{#- `nullif(trim(flag), '')`: the fhvhv flags are 'Y' or 'N', and a blank ('' or ' ') means not set. -#}
{% macro clean_flag(column) -%}
  nullif(trim({{ column }}), '')
{%- endmacro %}
