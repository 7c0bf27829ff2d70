from chute.entry import main

main()
