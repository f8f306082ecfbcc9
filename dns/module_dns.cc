// module dns
