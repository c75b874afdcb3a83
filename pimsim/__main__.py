from pimsim.cli import main

raise SystemExit(main())
