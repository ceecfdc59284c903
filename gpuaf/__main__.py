from gpuaf.cli import main

raise SystemExit(main())
