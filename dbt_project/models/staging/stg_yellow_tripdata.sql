-- Yellow trips, cleaned; yellow cabs only take street hails (trip_type 1) and have no e-hail fee.
-- 2009-2010 trips have coordinates instead of zones (zone ids NULL) and their vendor as a code in
-- vendor_name: a DDS trip (no VendorID) is kept (macros/staging.sql).
{{ stage_trips(
    'yellow', 'tpep_pickup_datetime', 'tpep_dropoff_datetime', trip_type='1', ehail_fee='0',
    airport_fee='airport_fee', vendor_name='vendor_name',
) }}
