"""Date formats of the admin's languages (FORMAT_MODULE_PATH): Django's own, except that every
date and time names its zone ("T"), so no time on an operator's screen is ambiguous."""
