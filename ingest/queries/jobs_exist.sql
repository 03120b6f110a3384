SELECT to_regclass('apalis.jobs') IS NOT NULL
