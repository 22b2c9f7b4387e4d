"""The shop owner's side: the admin API (:mod:`~cschat.admin.handlers`), its service
(:mod:`~cschat.admin.service`) and the reports (:mod:`~cschat.admin.reports`)."""
