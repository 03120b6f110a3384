# Prints the reference numbers of workers/src/ranking/bradley_terry.rs (test
# matches_the_reference_implementation): pip install choix==0.4.1 numpy; python3 choix_reference.py
import choix, numpy as np, inspect
print(inspect.signature(choix.mm_pairwise))
# A fixed vote set over 5 items: (winner, loser) repeated count times.
cells = [(0,1,7),(1,0,3),(0,2,9),(2,0,2),(1,2,6),(2,1,5),(3,0,4),(0,3,4),(3,4,8),(4,3,1),(1,4,5),(4,1,2),(2,3,3),(3,2,6)]
data = [(w,l) for w,l,c in cells for _ in range(c)]
for alpha in (0.0, 0.1):
    p = choix.mm_pairwise(5, data, alpha=alpha)
    print(alpha, [f"{x:.9f}" for x in p])
