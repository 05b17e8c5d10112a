# The image of the deployment (docker-compose.yml): the code location's gRPC server, and also the
# webserver and the daemon, so all three run the very same Dagster versions.
# Python matches pyproject's requires-python; the versions are constraints.txt's, as in `make install`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    TAXI_HOME=/var/lib/taxi_platform \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

WORKDIR /opt/taxi_platform

# The dependencies first, in a layer of their own that a change to the code does not rebuild:
# the project's [project.dependencies] under the same constraints.txt as `make install`.
COPY pyproject.toml constraints.txt ./
RUN python -m venv "$VIRTUAL_ENV" \
 && pip install --quiet --upgrade pip \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --quiet -c constraints.txt -r /tmp/requirements.txt

# The project: `make install`'s command without the dev extra. Editable, as in development, so
# the package finds dbt_project/ next to it in this folder.
COPY README.md ./
COPY taxi_platform ./taxi_platform
RUN pip install --quiet -c constraints.txt -e .

# The dbt manifest is prepared at build time; the build fails here if the dbt project is missing.
# `dbt parse` opens no database connection: dbt_project/profiles.yml's defaults suffice.
COPY dbt_project ./dbt_project
RUN test -f dbt_project/dbt_project.yml \
      || { echo "dbt_project/dbt_project.yml is missing: the image needs the dbt project" >&2; exit 1; }
# The same command as `make install`: dagster-dbt's standard preparation of the DbtProject that
# taxi_platform/dbt_project.py defines (`dbt deps` when the project has packages, then `dbt parse`
# with the project's profile).
RUN dagster-dbt project prepare-and-package --file taxi_platform/dbt_project.py \
 && test -f dbt_project/target/manifest.json

# The instance configuration and the gRPC workspace of the deployment.
COPY deploy ./deploy
# Runs as an unprivileged user; named volumes mounted on these folders start out owned by it.
# dbt_project stays writable: dagster-dbt writes each invocation's artifacts under target/.
RUN useradd --uid 1000 --create-home taxi \
 && mkdir -p "$DAGSTER_HOME/storage" "$TAXI_HOME" \
 && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
 && chown -R taxi:taxi "$DAGSTER_HOME" "$TAXI_HOME" dbt_project
USER taxi

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "taxi_platform.definitions", "--location-name", "taxi_platform"]
