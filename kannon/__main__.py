from kannon.cli import main

raise SystemExit(main())
