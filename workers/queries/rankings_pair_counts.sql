SELECT winner, loser, count(*) FROM pair_votes WHERE arena = $1 GROUP BY 1, 2
