SELECT algorithm, seed, commitment, committed_at, drawn_at, digest, capacity,
       json_build_object('weights', weights, 'rules', rules, 'registrants', registrants,
                         'winners', winners, 'waitlist', waitlist)::text
FROM public_draws WHERE tournament = $1
