-- Green trips, cleaned; green files have no airport fee (NULL).
{{ stage_trips(
    'green', 'lpep_pickup_datetime', 'lpep_dropoff_datetime', trip_type='trip_type', ehail_fee='ehail_fee',
    airport_fee='null',
) }}
