from autopilot.cli import main

main()
