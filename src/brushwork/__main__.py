"""``python -m brushwork`` runs the console script."""

from brushwork.cli import main

main()
