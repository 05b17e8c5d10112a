-- The taxi zones, one row per location id.
select
    cast({{ adapter.quote('LocationID') }} as integer) as location_id,
    {{ adapter.quote('Borough') }} as borough,
    {{ adapter.quote('Zone') }} as zone,
    service_zone
from {{ source('taxi', 'taxi_zones') }}
