from cschat.cli import main

raise SystemExit(main())
