SELECT grp, count(*) FROM group_members WHERE tournament = $1 GROUP BY grp ORDER BY grp
