-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates "dagster" (Dagster's run/event/schedule storage); the RoadLens sink
-- gets a database of its own so detection COPY bursts and their autovacuum never slow the
-- event log. Its tables are created by `roadlens db upgrade` (the compose "migrate" service).
CREATE DATABASE roadlens OWNER roadlens;
