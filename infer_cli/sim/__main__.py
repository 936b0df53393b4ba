from infer_cli.sim.server import main

raise SystemExit(main())
