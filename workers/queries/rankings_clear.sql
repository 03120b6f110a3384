DELETE FROM arena_rankings WHERE arena = $1
