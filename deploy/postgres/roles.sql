-- snapline's two roles on the platform's database. Run once, before `migration up`, as a
-- superuser or a role with CREATEROLE that is a member of the platform's owner role:
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 \
--        -v service_role=snapline_service -v migration_role=snapline_migration \
--        -v platform_owner=<the role that owns the platform's tables> \
--        -f deploy/postgres/roles.sql
--
-- Then set their passwords (ALTER ROLE ... PASSWORD '...'), run `migration up` as the
-- migration role, and deploy/postgres/grants.sql as the migration role.
--
-- migration role: runs `migration up | down | status` and `snapctl guard | capture`. It
--   builds indexes on the platform's tables and changes their storage settings, which
--   PostgreSQL allows only to the tables' owner: hence membership of the owner role. It also
--   creates snapline's own tables in the schema and the queue schema `apalis`.
-- service role: what the three services and `snapctl status` connect as. It gets its rights
--   from grants.sql, nothing more.

SELECT format('CREATE ROLE %I LOGIN', :'migration_role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'migration_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'service_role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'service_role') \gexec

GRANT :"platform_owner" TO :"migration_role";
SELECT format('GRANT CREATE ON DATABASE %I TO %I', current_database(), :'migration_role') \gexec
GRANT USAGE, CREATE ON SCHEMA public TO :"migration_role";
