// module queue
