from leaderjob.cli import main

main()
