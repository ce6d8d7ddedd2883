-- docker-compose: run once by the postgres image on an empty volume (POSTGRES_DB creates `intake`).
-- One database per service: intake holds the event log and the outbox; the projections have their own.
CREATE DATABASE followup;
CREATE DATABASE ledelsesinfo;
