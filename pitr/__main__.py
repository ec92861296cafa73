from pitr.entry import main

main()
