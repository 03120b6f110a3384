-- Bradley–Terry rankings per arena, refitted by the workers' scheduled ranking job (issue 4).
-- One row per item of the latest fit; the run table says which votes the fit covered, so an
-- arena without new votes is not refitted.
CREATE TABLE arena_rankings (
    arena      text NOT NULL,
    item       text NOT NULL,
    rank       integer NOT NULL,
    rating     double precision NOT NULL,
    ci_low     double precision NOT NULL,
    ci_high    double precision NOT NULL,
    wins       bigint NOT NULL,
    losses     bigint NOT NULL,
    PRIMARY KEY (arena, item)
);

CREATE TABLE arena_ranking_runs (
    arena      text PRIMARY KEY,
    -- The highest stream sequence among the votes fitted.
    last_seq   bigint NOT NULL,
    votes      bigint NOT NULL,
    replicates integer NOT NULL,
    fitted_at  timestamptz NOT NULL
);
