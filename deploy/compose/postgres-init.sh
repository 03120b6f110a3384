#!/bin/sh
# A read-only role for Grafana's Postgres panels (definitions and registrations).
set -e
psql -v ON_ERROR_STOP=1 -U tally -d tally <<SQL
CREATE ROLE tally_reader LOGIN PASSWORD '${TALLY_GRAFANA_PG_PASSWORD}';
GRANT CONNECT ON DATABASE tally TO tally_reader;
GRANT USAGE ON SCHEMA public TO tally_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE tally IN SCHEMA public GRANT SELECT ON TABLES TO tally_reader;
SQL
