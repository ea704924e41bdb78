@flag('lv_portal', $context)
<p>on</p>
@else
<p>off</p>
@endflag
