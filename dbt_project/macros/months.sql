{#- The month a trip belongs to is the month of the file it was published in (its source month):
    every file holds out-of-month trips, and only the file's month makes a monthly rebuild exact. -#}

{#- The months a run rebuilds: `month` (one month) or `month_start` .. `month_end` (inclusive), each
    like 2019-01-01, given as vars (`dbt build --vars '{month: 2019-01-01}'`) or, as the Dagster steps
    do, in the environment (TAXI_DBT_MONTH_START / TAXI_DBT_MONTH_END): a changed var makes dbt parse
    the whole project again (~5 s), a changed environment variable only the files that read it.
    None of them: every month. Returns the list of months, or none. -#}
{% macro selected_months() -%}
  {#- Read first, unconditionally: dbt re-parses a file when an environment variable it read changed. -#}
  {%- set env_start = env_var('TAXI_DBT_MONTH_START', '') -%}
  {%- set env_end = env_var('TAXI_DBT_MONTH_END', '') -%}
  {%- set month = var('month', none) -%}
  {%- set start = var('month_start', none) -%}
  {%- set end = var('month_end', none) -%}
  {%- set names = {'month_start': "var 'month_start' (or 'month')", 'month_end': "var 'month_end' (or 'month')"} -%}
  {%- if month in (none, '') and start in (none, '') and end in (none, '') -%}
    {%- set start, end = (env_start or none), (env_end or none) -%}
    {%- do names.update({'month_start': 'TAXI_DBT_MONTH_START', 'month_end': 'TAXI_DBT_MONTH_END'}) -%}
  {%- endif -%}
  {%- if month not in (none, '') -%}
    {%- if start not in (none, '') or end not in (none, '') -%}
      {{ exceptions.raise_compiler_error("give either var 'month' or 'month_start' and 'month_end', not both") }}
    {%- endif -%}
    {%- set start, end = month, month -%}
  {%- elif start in (none, '') and end in (none, '') -%}
    {{ return(none) }}
  {%- endif -%}
  {%- for name, value in [('month_start', start), ('month_end', end)] -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-01', value | string) -%}
      {{ exceptions.raise_compiler_error(names[name] ~ " must look like 2019-01-01, got " ~ (value if value is not none else "nothing")) }}
    {%- endif -%}
  {%- endfor -%}
  {%- set first = (start | string)[:4] | int * 12 + (start | string)[5:7] | int - 1 -%}
  {%- set last = (end | string)[:4] | int * 12 + (end | string)[5:7] | int - 1 -%}
  {%- if last < first -%}
    {{ exceptions.raise_compiler_error(names['month_end'] ~ " " ~ end ~ " is before " ~ names['month_start'] ~ " " ~ start) }}
  {%- endif -%}
  {%- set months = [] -%}
  {%- for k in range(first, last + 1) -%}
    {%- do months.append('%04d-%02d-01' % (k // 12, k % 12 + 1)) -%}
  {%- endfor -%}
  {{ return(months) }}
{%- endmacro %}

{#- `where filename in ('yellow_tripdata_2019-01.csv.gz', 'yellow_tripdata_2019-01.parquet', ...)`:
    prunes the source's monthly partitions (a predicate on the derived source_month would read every
    month's rows). A month's file is the course's CSV or the TLC's Parquet, whichever source loaded
    it (datasets.py, file_name_template): both names are listed, the absent one matches nothing. -#}
{% macro where_source_file(service) -%}
  {%- set months = selected_months() -%}
  {%- if months is not none -%}
    {%- set names = [] -%}
    {%- for m in months -%}
      {%- for extension in ('csv.gz', 'parquet') -%}
        {%- do names.append("'" ~ service ~ "_tripdata_" ~ m[:7] ~ "." ~ extension ~ "'") -%}
      {%- endfor -%}
    {%- endfor -%}
    where filename in ({{ names | join(', ') }})
  {%- endif -%}
{%- endmacro %}

{% macro where_month(column) -%}
  {%- if selected_months() is not none -%} where {{ month_predicate(column) }} {%- endif -%}
{%- endmacro %}

{#- Test scoping and deletes: the months being built (a range of whole months). -#}
{% macro month_predicate(column) -%}
  {%- set months = selected_months() -%}
  {%- if months is none -%} 1 = 1
  {%- elif months | length == 1 -%} {{ column }} = {{ month_literal(months[0]) }}
  {%- else -%} {{ column }} between {{ month_literal(months[0]) }} and {{ month_literal(months[-1]) }}
  {%- endif -%}
{%- endmacro %}

{% macro month_literal(month) -%}
  cast('{{ month }}' as date)
{%- endmacro %}

{#- Incremental models rebuild exactly the months: delete them, then insert them, in one transaction.
    On BigQuery a pre-hook is not in the insert's transaction, so there the months are replaced by
    `insert_overwrite` of their (monthly) partitions instead: one MERGE statement, atomic. -#}
{% macro month_incremental_strategy() -%}
  {{ return('insert_overwrite' if target.type == 'bigquery' else 'append') }}
{%- endmacro %}

{% macro month_partitions() -%}
  {%- set months = selected_months() -%}
  {%- if months is none or target.type != 'bigquery' -%} {{ return(none) }} {%- endif -%}
  {%- set partitions = [] -%}
  {%- for m in months -%} {%- do partitions.append("date('" ~ m ~ "')") -%} {%- endfor -%}
  {{ return(partitions) }}
{%- endmacro %}

{% macro delete_rebuilt_month(column) -%}
  {%- if is_incremental() and target.type != 'bigquery' -%}
    delete from {{ this }} where {{ month_predicate(column) if selected_months() is not none else 'true' }}
  {%- endif -%}
{%- endmacro %}

{% macro source_month(filename) -%}
  {{ return(adapter.dispatch('source_month')(filename)) }}
{%- endmacro %}

{#- Every release file name is `<service>_tripdata_YYYY-MM.<extension>` (datasets.py,
    file_name_template), the extension `csv.gz` (the course's backup) or `parquet` (the TLC's): the
    month is the 7 characters after `_tripdata_`, whatever the service and the extension. Slicing
    costs a tenth of a regular expression per row (2.5 s instead of 29 s for 7.7 M rows, measured
    at a fixed offset from the end; finding `_tripdata_` first costs about as much, measured). -#}
{% macro default__source_month(filename) -%}
  cast(substr({{ filename }}, strpos({{ filename }}, '_tripdata_') + 10, 7) || '-01' as date)
{%- endmacro %}

{#- No capture group: the BigQuery emulator's REGEXP_EXTRACT returns the whole match
    (`_tripdata_2019-01`, whose month starts at its 11th character). -#}
{% macro bigquery__source_month(filename) -%}
  parse_date('%Y-%m', substr(regexp_extract({{ filename }}, r'_tripdata_[0-9]{4}-[0-9]{2}'), 11, 7))
{%- endmacro %}

{% macro duration_minutes(start, finish) -%}
  {{ return(adapter.dispatch('duration_minutes')(start, finish)) }}
{%- endmacro %}

{% macro default__duration_minutes(start, finish) -%}
  round(cast(extract(epoch from ({{ finish }} - {{ start }})) / 60.0 as numeric), 2)
{%- endmacro %}

{% macro bigquery__duration_minutes(start, finish) -%}
  round(cast(timestamp_diff({{ finish }}, {{ start }}, second) as numeric) / 60, 2)
{%- endmacro %}
