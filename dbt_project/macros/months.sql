{#- The month a trip belongs to is the month of the file it was published in (its source month):
    every file holds out-of-month trips, and only the file's month makes a monthly rebuild exact. -#}

{% macro month_var() -%}
  {%- set month = var('month', none) -%}
  {%- if month is none or month == '' -%}
    {{ return(none) }}
  {%- endif -%}
  {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-01', month | string) -%}
    {{ exceptions.raise_compiler_error("var 'month' must look like 2019-01-01, got " ~ month) }}
  {%- endif -%}
  {{ return(month | string) }}
{%- endmacro %}

{#- `where filename = 'yellow_tripdata_2019-01.csv.gz'`: prunes the source's monthly partitions. -#}
{% macro where_source_file(service) -%}
  {%- set month = month_var() -%}
  {%- if month is not none -%}
    where filename = '{{ service }}_tripdata_{{ month[:7] }}.csv.gz'
  {%- endif -%}
{%- endmacro %}

{% macro where_month(column) -%}
  {%- set month = month_var() -%}
  {%- if month is not none -%}
    where {{ column }} = {{ month_literal(month) }}
  {%- endif -%}
{%- endmacro %}

{#- Test scoping: a monthly build tests the month it built. -#}
{% macro month_predicate(column) -%}
  {%- set month = month_var() -%}
  {%- if month is not none -%} {{ column }} = {{ month_literal(month) }} {%- else -%} 1 = 1 {%- endif -%}
{%- endmacro %}

{% macro month_literal(month) -%}
  cast('{{ month }}' as date)
{%- endmacro %}

{#- Incremental models rebuild exactly the month: delete it, then insert it, in one transaction.
    On BigQuery a pre-hook is not in the insert's transaction, so there the month is replaced by
    `insert_overwrite` of its (monthly) partition instead: one MERGE statement, atomic. -#}
{% macro month_incremental_strategy() -%}
  {{ return('insert_overwrite' if target.type == 'bigquery' else 'append') }}
{%- endmacro %}

{% macro month_partitions() -%}
  {%- set month = month_var() -%}
  {{ return(["date('" ~ month ~ "')"] if month is not none and target.type == 'bigquery' else none) }}
{%- endmacro %}

{% macro delete_rebuilt_month(column) -%}
  {%- if is_incremental() and target.type != 'bigquery' -%}
    {%- set month = month_var() -%}
    delete from {{ this }} {% if month is not none %}where {{ column }} = {{ month_literal(month) }}{% else %}where true{% endif %}
  {%- endif -%}
{%- endmacro %}

{% macro source_month(filename) -%}
  {{ return(adapter.dispatch('source_month')(filename)) }}
{%- endmacro %}

{% macro default__source_month(filename) -%}
  to_date(substring({{ filename }} from '_([0-9]{4}-[0-9]{2})\.csv'), 'YYYY-MM')
{%- endmacro %}

{#- No capture group: the BigQuery emulator's REGEXP_EXTRACT returns the whole match. -#}
{% macro bigquery__source_month(filename) -%}
  parse_date('%Y-%m', substr(regexp_extract({{ filename }}, r'[0-9]{4}-[0-9]{2}\.csv'), 1, 7))
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
