-- Yellow trips, cleaned; yellow cabs only take street hails (trip_type 1) and have no e-hail fee.
{{ stage_trips('yellow', 'tpep_pickup_datetime', 'tpep_dropoff_datetime', trip_type='1', ehail_fee='0') }}
